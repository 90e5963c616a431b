# The pipeline on a CUDA machine. Build and run (needs the NVIDIA container toolkit):
#   docker build -t carvana .
#   docker run --gpus all --rm -it --shm-size=8g -v "$PWD/data:/workspace/data" carvana
# The default command is the README's: `dvc repro` on the demo competition. For the real competition,
# mount your Kaggle token read-only and pass the param:
#   docker run --gpus all --rm -it --shm-size=8g -v ~/.kaggle:/home/carvana/.kaggle:ro \
#     -v "$PWD/data:/workspace/data" carvana dvc exp run -S download.source=kaggle
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv git \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1001 carvana
WORKDIR /workspace
COPY --chown=carvana:carvana . /workspace
USER carvana
ENV VIRTUAL_ENV=/home/carvana/.venv PATH=/home/carvana/.venv/bin:$PATH
RUN python3 -m venv $VIRTUAL_ENV && pip install torch==2.14.1 torchvision==0.29.1 -e .

CMD ["dvc", "repro"]
