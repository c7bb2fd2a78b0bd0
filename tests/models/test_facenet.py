"""facenet-pytorch is installed with --no-deps (its wheel pins old torch/numpy): it must still
import and run with the torch and numpy installed here."""

import numpy as np
import torch
from PIL import Image


def test_inception_resnet_and_mtcnn_run() -> None:
    from facenet_pytorch import MTCNN, InceptionResnetV1

    net = InceptionResnetV1(pretrained=None).eval()  # vggface2 weights need a download
    with torch.no_grad():
        emb = net(torch.randn(2, 3, 160, 160))
    assert emb.shape == (2, 512)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))  # L2-normalized embeddings
    mtcnn = MTCNN(image_size=64, device="cpu")  # its detector weights ship in the wheel
    boxes, probs = mtcnn.detect(Image.fromarray(np.full((96, 96, 3), 128, np.uint8)))
    assert boxes is None and probs[0] is None  # a flat grey image holds no face
