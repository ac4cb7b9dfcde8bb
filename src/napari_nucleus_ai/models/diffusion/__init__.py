"""CytoDiffusion-style generative classifier: denoising-error classification, generation, counterfactuals."""
