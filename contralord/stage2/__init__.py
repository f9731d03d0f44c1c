"""Stage 2 (Sec. 3.3, Algorithm 1 lines 8-17): the encoder and its heads trained with L_rec, L_sup and the two
InfoNCE losses against momentum encoders and queues, and Locatello et al.'s VAE baseline. It reads stage 1's
``LatentResult`` only, never stage 1's code.
"""
