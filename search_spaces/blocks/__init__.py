"""Blocks of the search spaces, one module per family, on shared static and dynamic layers.

- :mod:`search_spaces.blocks.layers`: conv + BN + activation, squeeze-and-excitation, channel shuffle, and the
  dynamic (sliced) convolution, depthwise, BatchNorm and SE layers every weight-sharing family is made of;
- :mod:`search_spaces.blocks.mbconv`: MBConv (MobileNetV2 inverted residual, MobileNetV3 with SE / h-swish) and
  the OFA MobileNetV3 network;
- :mod:`search_spaces.blocks.shuffle`: the ShuffleNetV2 units (stride 1 and 2, kernels 3/5/7 and SPOS's
  Xception-like variant);
- :mod:`search_spaces.blocks.ghost`: the ghost module and the Ghost bottleneck.

Each family has a static block (an ordinary ``nn.Module``, exportable to ONNX) and a dynamic block that holds
the weights of its largest variant and runs any other by slicing; ``copy_to`` writes the active variant's
weights into a static block, so an extracted subnet computes what the supernet's active path computes.
"""

from search_spaces.blocks.layers import (
    CHANNEL_DIVISOR,
    SE_REDUCTION,
    ChannelShuffle,
    ConvBNAct,
    DynamicBatchNorm2d,
    DynamicConv2d,
    DynamicDepthwiseConv2d,
    DynamicSE,
    SqueezeExcite,
    copy_bn,
    init_weights,
    make_act,
    make_divisible,
)
from search_spaces.blocks.mbconv import BlockSpec, DynamicMBConv, Head, MBConv, MobileNetV3, NetSpec

__all__ = [
    "CHANNEL_DIVISOR", "SE_REDUCTION", "BlockSpec", "ChannelShuffle", "ConvBNAct", "DynamicBatchNorm2d",
    "DynamicConv2d", "DynamicDepthwiseConv2d", "DynamicMBConv", "DynamicSE", "Head", "MBConv", "MobileNetV3",
    "NetSpec", "SqueezeExcite", "copy_bn", "init_weights", "make_act", "make_divisible",
]
