"""Execution of graphs: the NumPy interpreter (numbers); timing models come with the wafer."""
