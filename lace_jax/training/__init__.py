"""Training of the shipped default model: GAN (StyleGAN2 losses), the image judge, and latent classifiers."""
