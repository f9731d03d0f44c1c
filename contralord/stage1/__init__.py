"""Stage 1 (Sec. 3.2, Algorithm 1 lines 3-7): latent optimisation of the codes and G, its labelled-factor
classifiers and their supervised-only references. It hands stage 2 a ``LatentResult`` (``contralord.latent_result``).
"""
