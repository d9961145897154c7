"""Work the panels hand to a separate process (`process.run_in_child`) and the functions it runs
there (`tasks`). Neither imports napari or Qt."""
