"""The label vocabulary every part of kseg shares.

A mask or label map holds train ids: 0 .. num_classes - 1 for classes and IGNORE_INDEX
for pixels that count in no class (void, borders, unlabelled).
"""

IGNORE_INDEX = 255
