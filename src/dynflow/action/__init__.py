"""Actions: the units users write, with plan, run and finalize phases."""
