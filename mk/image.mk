# Issue 18: the hep-score entry point, the container images and their tests.
#
#   make image        the CPU image localhost/mlpf-bmk:v<version> (podman, else
#                     docker, else buildah; Debian 12 base pulled or made here
#                     with mmdebstrap): container/build-image.sh
#   make image-gpu    the CUDA image localhost/mlpf-bmk:v<version>-cuda
#   make test-hepscore  the entry point run as hep-score runs the image, bad
#                     arguments, failures, the score from hepscore/*.yaml
#   make test-image   build a small image and run it as hep-score does
#                     (SKIPPED where no engine can run containers)
# IMAGE_DATASET: the carried dataset's 'mlpfbench generate' options.
IMAGE_DATASET ?= --hepscore

.PHONY: image image-gpu test-hepscore test-image
image:
	container/build-image.sh --dataset "$(IMAGE_DATASET)"
image-gpu:
	container/build-image.sh --gpu --dataset "$(IMAGE_DATASET)"

test-hepscore:
	tests/hepscore.sh $(BUILD)
test-image:
	tests/image.sh $(BUILD)

TEST_TARGETS += test-hepscore test-image

