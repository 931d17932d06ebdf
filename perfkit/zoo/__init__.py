"""perfkit.zoo"""
