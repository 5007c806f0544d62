#!/bin/bash
# Asks URL every 0.1 s, printing "EPOCH-SECONDS ANSWER" for each answer (the
# stand-in API server's "node2 ok", or curl's error), until COUNT answers in a row match
# the extended regular expression STOP (exit 0) or SECONDS have passed (exit 1). Used by
# tests/proxy_lab.rs on lab nodes and on the host.
# Usage: answers.sh CA_FILE URL SECONDS STOP COUNT
set -u
ca=$1 url=$2 seconds=$3 stop=$4 count=$5
deadline=$(($(date +%s) + seconds))
in_a_row=0
while :; do
  # A connection attempt gets 0.3 s: one that went to a node the VIP just left would
  # otherwise hang for the whole second and blur the measure.
  answer=$(curl --silent --show-error --connect-timeout 0.3 --max-time 1 --cacert "$ca" "$url" 2>&1 | tr '\n' ' ')
  answer=${answer% }
  echo "$(date +%s.%N) $answer"
  if [[ $answer =~ $stop ]]; then in_a_row=$((in_a_row + 1)); else in_a_row=0; fi
  ((in_a_row >= count)) && exit 0
  (($(date +%s) >= deadline)) && exit 1
  sleep 0.1
done
