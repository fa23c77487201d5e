"""bioimage.io model packages of trained models (workflow/rules/bmz.smk).

`arch_source` writes the package's self-contained network file, `test_tensors` its test
input and the training framework's prediction (framework environment), `export` the
package and its validation (bioimage.io environment), `table` the report's table. Imports
neither framework nor bioimage.io at package level.
"""
