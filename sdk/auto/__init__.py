"""``backend="auto"``: the fastest path this CPU has among those checked against FP32.

* :mod:`.choice`: the candidate paths, their timing and the cached choice (``python -m facesdk.auto``);
* :mod:`.approval`: which paths may be chosen, from agreement records with FP32 on face crops.

The backends themselves live in :mod:`facesdk.backends`; this package chooses among them.
"""
