"""perfkit.analysis"""
