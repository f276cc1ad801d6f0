"""Starting a run: what the command line may ask, the data fetched, one worker process (or group) per framework."""
