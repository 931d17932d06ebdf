"""perfkit.export"""
