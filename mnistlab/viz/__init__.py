"""Pictures of the data, the networks and the runs (issue 5): the drawing code the CLI
(`mnistlab show ...`), study reports and the web page share.

Every figure function returns a `matplotlib.figure.Figure` built without pyplot (no global
state, no GUI backend: it renders through Agg), and `save_figure` writes it as a PNG.
The computations behind the figures (layer outputs, histograms, saliency, embeddings, the
most-confused pairs) are plain functions on tensors, usable without drawing anything.
"""

from mnistlab.viz._plot import save_figure

__all__ = ["save_figure"]
