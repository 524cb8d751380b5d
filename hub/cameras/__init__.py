"""Sample cameras on this machine: clips made from the packaged images, served over RTSP and
HTTP by GStreamer (`hub cameras serve`), and on-demand snapshots through the API."""
