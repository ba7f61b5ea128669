"""What every entry point is made of: params.yaml -> frozen config (config), the command line
(cli), the errors a person must fix (errors), every path a stage reads or writes (paths), writes
that never leave half a file (files), running other entry points as child runs (chain), one
pipeline at a time per checkout (lock), and no credential in anything shown (secrets)."""
