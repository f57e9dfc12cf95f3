"""Image geometry: dewarping pages, straightened line crops, and maps back to original pixels."""
