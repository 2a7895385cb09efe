"""Networks: the SIT 3D generator, a 3D U-Net alternative, the 3D PatchGAN, the 2D slice VAE."""
