"""Redis: the process-wide clients (``client``) and the URLs they are made from, plain or a
Sentinel service (``urls``). Imports nothing: deploy/healthcheck.py reads ``urls`` without
Django."""
