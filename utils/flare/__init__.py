"""Synthetic lens flare from optics, for training pairs that look like real flare.

One module per step:

- ``spectrum``: wavelengths, the camera's colour responses, light colours from colour temperatures.
- ``psf``: random apertures (disc or polygon, dust, scratches, defocus) and their RGB point-spread
  functions summed over the spectrum.
- ``bank``: a bank of PSFs, computed in worker processes and cached on disk.
- ``light_sources``: lamps, windows, signs and a scene's own highlights, as emission in linear light.
- ``scenes``: clean night scenes and where they come from: photographs, or ``procedural`` drawings.
- ``procedural``: night streets, facades and trees drawn from a seed.
- ``composite``: the flare (emission convolved with a PSF, ghosts) and the input/target pair.
- ``fftconv``: linear convolution by FFT.
- ``phone``: what a phone's night photograph adds (``--phone_flare``): more lamps, long streaks, large glows.
- ``night``: the night camera (``--night``): exposure, white balance, noise and JPEG, alike on input and target.
- ``masks``: the glare and streak regions of an input.
- ``pairs``: one pair from its split, index and seed.

``python -m scripts.flare_data`` writes a data set in the contest's layout.
"""
