//! How results reach the operator: data on stdout (a table, or `-o json|yaml`), everything
//! else on stderr; no colour when `NO_COLOR` is set or stderr is not a terminal.

use std::io::IsTerminal;

use clap::ValueEnum;
use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table for people.
    #[default]
    Table,
    Json,
    Yaml,
}

pub fn colours_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

pub fn init_colours() {
    let colours = colours_enabled();
    miette::set_hook(Box::new(move |_| {
        let handler = miette::MietteHandlerOpts::new()
            .color(colours)
            .unicode(colours)
            .terminal_links(false);
        Box::new(handler.build())
    }))
    .ok();
}

pub fn print_json<T: Serialize>(value: &T) {
    let mut text = serde_json::to_string_pretty(value).expect("report types serialize to JSON");
    text.push('\n');
    write_stdout(&text);
}

pub fn print_yaml<T: Serialize>(value: &T) {
    write_stdout(&serde_saphyr::to_string(value).expect("report types serialize to YAML"));
}

/// Data for a pipe: a reader that stopped reading (`| head`) is not an error of ours.
fn write_stdout(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        && error.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("cannot write the output: {error}");
    }
}

/// Prints data in the requested machine format; returns false for `Format::Table`, which
/// each command renders itself.
pub fn print_data<T: Serialize>(format: Format, value: &T) -> bool {
    match format {
        Format::Json => print_json(value),
        Format::Yaml => print_yaml(value),
        Format::Table => return false,
    }
    true
}

pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    table
}
