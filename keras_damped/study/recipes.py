"""Study commands that reproduce published settings (shown in the README)."""

# The paper's CIFAR-10 setting (docs/paper.md sections 4-5): the ResNet-110
# family, 160 epochs with the learning rate divided by 10 at epochs 80 and
# 120 (SGD, momentum 0.9, coupled weight decay 1e-4, batch 128, pad-2 reflect
# crop and flip), evaluated on the full test set with the CIFAR-10-C noise
# files (TFDS cifar10_corrupted) and FGSM, IFGSM and PGD-20 in pixel space;
# three seeds per model. Needs the TFDS CIFAR-10 data and, realistically, a GPU.
CIFAR10_PAPER = (
    "keras-damped study --model resnet110,in_resnet110,lambda_in_resnet110 "
    "--seeds 0,1,2 --dataset cifar10 --epochs 160 --schedule paper "
    "--augment paper --attacks fgsm,ifgsm,pgd --eps 1,2,4,8 "
    "--noises gaussian,shot,impulse,speckle --severities 1-5 --test-limit 10000 "
    "--out runs/study-cifar10"
)
