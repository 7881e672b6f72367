"""Command-line verifications of DePRL's theory, one module per question.

Run each as ``python -m verification.<name> --help``.
"""
