"""What a compile writes: report.json and report.txt (summary.py), the model's statistics
(stats.py), placement.json and the wafer sections (wafer.py), the Chrome/Perfetto timeline
(trace.py) and the picture of the mesh (mesh_plot.py)."""
