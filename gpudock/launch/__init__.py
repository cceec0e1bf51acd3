"""Launching containers on chosen GPUs: selection -> LaunchSpec -> renderings (docker CLI, JSON,
SDK kwargs, compose, k8s), the driver volume, the image CUDA check, the launch itself, and the
nvidia-docker-plugin compatible REST server. Plain Python; nothing here imports Textual."""
