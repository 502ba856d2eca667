"""The engine: the graph-free training step over the layer protocol.

The autograd graph lives in ``gpunet.autograd``; the layer protocol it and the step
share is ``Layer.forward_pass`` (``gpunet.layers.base``).
"""
