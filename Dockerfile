# The pipeline on a CUDA machine. Build and run (needs the NVIDIA container toolkit):
#   docker build -t kseg .
#   docker run --gpus all --rm -it --shm-size=8g -v "$PWD/data:/workspace/data" kseg
# The default command is the README's: `dvc repro` on the demo competition. For a real competition, mount your
# Kaggle token read-only and pass the params:
#   docker run --gpus all --rm -it --shm-size=8g -v ~/.kaggle:/home/kseg/.kaggle:ro \
#     -v "$PWD/data:/workspace/data" kseg dvc exp run -S download.source=kaggle
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv git \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1001 kseg
WORKDIR /workspace
COPY --chown=kseg:kseg . /workspace
USER kseg
ENV VIRTUAL_ENV=/home/kseg/.venv PATH=/home/kseg/.venv/bin:$PATH
RUN python3 -m venv $VIRTUAL_ENV && pip install torch==2.14.1 torchvision==0.29.1 -e ".[pipeline]"

CMD ["dvc", "repro"]
