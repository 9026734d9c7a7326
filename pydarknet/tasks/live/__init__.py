"""The demo's live output: the MJPEG and JSON ports, the page, -http_post_host.
May import: the other tasks, network, results, kernels, files.

Live output of the demo: the fork's MJPEG and JSON ports, a page to watch them in a browser, and
-http_post_host (output.py: LiveOutput; server.py: the HTTP server of one port; messages.py: what is sent per frame;
post.py: the POSTs; page/: the page's HTML, script and style)."""
