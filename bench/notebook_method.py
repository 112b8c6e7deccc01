"""The original notebook's featurization method, re-expressed as a reference.

It is what our features must equal (for RGB input) and the baseline our speed is measured
against, so it keeps the notebook's choices on purpose: resize without converting to RGB,
`img_to_array`, `preprocess_input`, a model rebuilt from broadcast weights in every
partition, and `model.predict` on each batch.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from PIL import Image


def notebook_preprocess(content: bytes) -> np.ndarray:
    from keras.applications.mobilenet_v2 import preprocess_input
    from keras.utils import img_to_array

    return preprocess_input(img_to_array(Image.open(io.BytesIO(content)).resize([224, 224])))


def notebook_feature_model(feature_weights: list[np.ndarray], base_weights: str | None = None):
    """MobileNetV2 cut before its classifier, frozen, with the given (broadcast) weights.

    The notebook first loads the full model's weights (`imagenet`) and then overwrites them
    with the broadcast ones; `base_weights` (a weights file) plays that first load offline.
    """
    import keras
    from keras.applications import MobileNetV2

    full = MobileNetV2(weights=base_weights, include_top=True, input_shape=(224, 224, 3))
    for layer in full.layers:
        layer.trainable = False
    model = keras.Model(inputs=full.input, outputs=full.layers[-2].output)
    model.set_weights(feature_weights)
    return model


def notebook_featurize_series(model, contents: pd.Series) -> pd.Series:
    batch = np.stack(contents.map(notebook_preprocess))
    predictions = model.predict(batch, verbose=0)
    return pd.Series([p.flatten() for p in predictions])
