"""Stage 7, the job: Beam composite transforms and the per-replay worker.

``transforms`` composes the stages into Beam ``PTransform``\\s (scan, filter,
sample, write, manifest); ``worker`` samples one replay in a child process
under a time limit and writes its batch file.

Imports: every stage before it.
"""
