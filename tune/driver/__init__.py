"""The sweep on the driver: the command line and every check before Ray starts (``run``), Ray and the Tuner and the
rounds of --until-decided (``sweep``), what the parent run records (``records``) and the table and registered model at
the end (``publish``).
"""
