"""How an entry point runs from the command line (cli): its flags generated from its params.yaml
section, logging, the tracking store set up, and any StageError as one `error: <stage>:` line.
It sits above both steps/stage (config, errors, paths) and steps/tracking (the store), which it
puts together; neither imports it."""
