"""qgrey: greylisting for qmail, as a qmail-spp plugin."""

VERSION = "0.1.0"
