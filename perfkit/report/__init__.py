"""perfkit.report"""
