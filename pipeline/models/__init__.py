"""The models: the seed's U-Net family, smp encoders, the factory, losses and checkpoints."""
