"""The engines that evaluate the marginal likelihood (GLMMs) or fit the exact LMM, one folder
per structure of the random effects."""
