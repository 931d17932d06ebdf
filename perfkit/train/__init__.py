"""perfkit.train"""
