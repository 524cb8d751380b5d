"""Live camera view: a relay (`hub relay`) runs one ffmpeg per watched camera and fans its
MPEG-TS out to the page's players; the hub hands out signed tickets for it and warms the
cameras of incidents as they open."""
