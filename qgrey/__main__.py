from qgrey.plugin import main

main()
