"""perfkit.profile"""
