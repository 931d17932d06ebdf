"""perfkit.accuracy"""
