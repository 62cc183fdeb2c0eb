"""The sans-I/O core: route selection, event shapes, handler results, limits, ids.

Standard library only; nothing here touches a socket, a thread or the clock.
"""
