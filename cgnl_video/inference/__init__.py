"""Recognising videos with a trained model: :class:`~cgnl_video.inference.recognizer.Recognizer`."""
