from .entry_point import main

if __name__ == "__main__":  # not when a worker process imports this module
    main(prog_name="gumbelseq")
