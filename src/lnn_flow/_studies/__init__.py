"""The built-in studies (a new study goes here): the default demo, the implicit-regularization studies of Sections 4 and 5, and their figures."""
