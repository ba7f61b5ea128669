"""What every entry point is made of: params.yaml -> frozen config, each field with the values it
accepts (config), how a field declares them (schema) and how values reach it, coerced and checked,
through every door (coercion), the errors a person must fix (errors), every path a stage reads or
writes (paths), writes that never leave half a file (files), running other entry points as child
runs (chain), one pipeline at a time per checkout (lock), a stage's independent jobs in worker
processes (workers), and no credential in anything shown (secrets). The command line that puts
these together with tracking lives above, in steps/entry."""
