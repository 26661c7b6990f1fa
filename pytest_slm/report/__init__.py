"""Reports: the environment a run happened in, and the JSON / markdown writers."""
