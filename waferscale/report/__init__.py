"""What a compile writes: report.json, assembled for every mode by one function (assemble.py, its
shape in report.schema.json) and report.txt (summary.py), the output directory with its marker
(outputs.py), the model's statistics (stats.py), placement.json and the wafer sections (wafer.py),
the Chrome/Perfetto timeline (trace.py), the picture of the mesh (mesh_plot.py) and the interactive
page report.html (html.py, page/; browser.py opens it in headless Chromium for its test and
benchmark)."""
