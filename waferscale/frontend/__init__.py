"""Frontends: PyTorch models into our IR, through torch.export (``torch_export.py``, FX graph ->
IR in ``fx_import.py``) or torch-mlir's torch dialect (``torch_mlir_*.py``), one table of ATen
converters for both (``aten.py``); language models by zoo name or Hugging Face config
(``lm.py``); and a text IR file, such as a dump of ``--print-ir-after`` (``ir_file.py``)."""
