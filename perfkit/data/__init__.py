"""perfkit.data"""
