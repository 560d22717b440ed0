"""Stage 2: expand a grid spec into trials (pure) and run them on Ray Tune + Ray Train (edge)."""
